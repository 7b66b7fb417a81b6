"""A field model as the loop IR's lanes see it (``codegen.emit_field``): one lane, whose state vector is the
grid flattened, (D, 1).  The printed driver — the same fixed-step and adaptive loop IR every backend
prints — calls these for the model's part: N and L u on the grid, sums Σ coef · f(hL) v through the
structured operator (``operators.py``), and the operators' values for a step size, memoised per step-size
class so equal steps and repeated adaptive sizes pay once."""
from __future__ import annotations

import numba
import numpy as np

from ..abi import JIT_FLAGS
from .expm_action import UNIT_ROUNDOFF, ActionControl

#: step sizes whose operator values are kept (fixed grids have one or two; adaptive steps rarely repeat one)
MEMO_SIZES = 8
#: φ-actions of adaptive steps are kept this far below the step's relative tolerance
ACTION_TOL_FRACTION = 0.01


def action_tolerance(rtol) -> float:
    """The relative error allowed to an adaptive step's φ-actions (``kernels.expm_action``): a hundredth of
    the smallest rtol, so the action's error stays below the controller's error estimate; never below u."""
    return max(UNIT_ROUNDOFF, ACTION_TOL_FRACTION * float(np.min(rtol)))


def _scalar(x) -> float:
    """A lane value of the one lane (a number or an array of one entry) as a float."""
    if isinstance(x, (int, float)):
        return float(x)
    return float(x.flat[0]) if isinstance(x, np.ndarray) else float(np.ravel(x)[0])


class FieldLanes:
    """``N(u, t)`` on grids of ``shape`` and the linear operator ``op`` (``kernels.operators``), for the lane
    layout (D, 1); ``polys``: the scheme's operators, name -> φ-polynomial (``codegen.phi.phi_poly``)."""

    def __init__(self, shape, N, op, polys: dict, memo: dict | None = None, jacobian=None, jacobian_polys=None):
        self.shape, self.N, self.op, self.polys, self.jac = tuple(shape), N, op, dict(polys), jacobian
        self.jacobian_polys = dict(jacobian_polys or {})   # the scheme's Jacobian operators: name -> poly (J: None)
        self.memo = {} if memo is None else memo      # step-size class -> operator values (kept across solves)
        self.transforms = {}                          # the operator's transforms of this step's registers
        self.actions = ActionControl()                # φ-actions' tolerance (adaptive: action_tolerance) and count

    def grid(self, v):
        return np.asarray(v).reshape(self.shape)

    def lane(self, g):
        return np.asarray(g, dtype=float).reshape(-1, 1)

    def forcing(self, U, t):
        """N(U, t): the part the exponential methods treat explicitly."""
        return self.lane(self.N(self.grid(U), _scalar(t)))

    def full(self, U, t):
        """f = L U + N(U, t)."""
        g = self.grid(U)
        return self.lane(self.N(g, _scalar(t)) + self.op.apply(g))

    def jacobian(self, U, t):
        """Keep J̃ = [[L + ∂N/∂u, ∂N/∂t], [0, 0]] at (U, t), (D + 1) square (exponential Rosenbrock methods;
        ``jacobian(u, t)`` the model's (∂N/∂u dense or scipy sparse, ∂N/∂t)), as an ``operators.Matrix`` for the
        step's :meth:`jacobian_action`s (one Matrix a step: its action matrix is made once, not once per action):
        in CSR on :class:`JacobianPattern` where L and ∂N/∂u are sparse, else dense."""
        from scipy import sparse
        from .operators import Matrix, dense_matrix, sparse_matrix
        J, b = self.jac(self.grid(U), _scalar(t))
        jtilde = self._sparse_jtilde(sparse_matrix(self.op), J.tocoo(), b) if sparse.issparse(J) else None
        if jtilde is None:
            d = J.shape[0]
            jtilde = np.zeros((d + 1, d + 1))
            jtilde[:d, :d] = dense_matrix(self.op) + (J.toarray() if sparse.issparse(J) else J)
            jtilde[:d, d] = b
        self.jtilde = Matrix((jtilde.shape[0],), jtilde)
        values = jtilde.data if sparse.issparse(jtilde) else jtilde
        self.jtilde_finite = bool(np.all(np.isfinite(values)))      # checked once a step, not per action
        self.jtilde_autonomous = not np.any(b)      # ∂N/∂t = 0 here: the time entry τ of the actions' vectors is inert
        self.time_scale = None                      # J̃_σ and σ of this step's time entry (:meth:`_time_scaled`)

    def _time_scaled(self, terms):
        """(J̃_σ, σ): this step's J̃ with its time column b divided by σ (in place, once a step), for vectors [v; στ] —
        the same state block, since J̃_σ [v; στ] = [(L + J)v + bτ; 0].  σ = ‖v‖_2/|τ| of the step's first term with
        τ ≠ 0 (an exponential Rosenbrock step's [f(u_n); 1]; σ = 1 where every v or τ is 0) puts τ on v's scale.
        A Krylov action's tolerance is relative to the whole vector: unscaled, τ ~ 1 put a forced state of 1e-12 6e5×
        rtol off; scaled only down (σ ≤ 1), b's share h‖b‖_1/2 of the logarithmic-norm bound (``operators.phi_action``'s
        routing) sent a unit-size forced 32 × 32 diffusion's actions to Taylor (7101 products, 3750 at scale 1e-6)."""
        if self.time_scale is None:
            from scipy import sparse
            from .krylov_action import stable_norm
            sigma = 1.0
            for coef, name, v, tau in terms:
                size, tau = stable_norm(np.ravel(v)), abs(_scalar(tau))     # (np.linalg.norm: 0 below ~1e-160)
                if size > 0.0 and tau > 0.0 and 0.0 < size / tau < np.inf:
                    sigma = size / tau
                    break
            A = self.jtilde.matrix        # this step's own (made by jacobian()), before any action: scaled in place
            if sigma != 1.0 and sparse.issparse(A):
                A.data[A.indices == A.shape[0] - 1] /= sigma
            elif sigma != 1.0:
                A[:, -1] /= sigma
            self.jtilde.tighten_log_norms(*time_column_log_norms(A))     # phi_action's routing bound
            self.time_scale = (self.jtilde, sigma)
        return self.time_scale

    def _sparse_jtilde(self, L, J, b):
        """J̃ in CSR from L's CSR and ∂N/∂u's entries (COO) on the pattern kept while J's entries stay where they
        were (a step fills only its data); None where L is not sparse or J̃ is not sparse enough."""
        if L is None:
            return None
        pattern = getattr(self, "jtilde_pattern", None)
        if pattern is None or not pattern.holds(J):
            pattern = self.jtilde_pattern = JacobianPattern(L, J.row, J.col)
        return pattern.matrix(L, J.data, b) if pattern.sparse_enough() else None

    def jacobian_action(self, terms, h):
        """Σ coef · f(hJ̃)(v, τ) over ``terms`` = [(coef, Jacobian operator name, v, τ)], f a φ-polynomial of J̃ (or
        J̃ itself): J̃ as a ``operators.Matrix`` whose sum of :class:`~.operators.PhiAction` terms groups the φ by
        c h, each group one augmented-matrix exponential action (Al-Mohy & Higham 2011): never φ(hJ̃) itself."""
        from .operators import PhiAction
        A, h = self.jtilde, _scalar(h)
        if not self.jtilde_finite:            # a NaN/inf Jacobian: a non-finite stage, which the driver's retcodes name
            return self.lane(np.full(A.size - 1, np.nan))
        # the time entry τ on the state's scale: with ∂N/∂t = 0 it does not reach the state's block and is left 0,
        # else J̃'s time column is scaled (:meth:`_time_scaled`); a Krylov action's tolerance is relative to the whole
        # vector [v; τ] (a state of 1e-6 gave 76× rtol: its v ~ 2e-7, τ ~ 7e-3)
        sigma = 0.0
        if not self.jtilde_autonomous:
            A, sigma = self._time_scaled(terms)
        sums = []
        for coef, name, v, tau in terms:
            x = _scalar(coef) * np.concatenate([np.ravel(v), [sigma * _scalar(tau)]])
            poly = self.jacobian_polys[name]
            sums.append((1.0, None, A.matrix @ x) if poly is None else (1.0, PhiAction(poly, h), x))
        return self.lane(A.combine(sums, actions=self.actions)[:-1])

    def combine(self, terms):
        """Σ coef · value v over ``terms`` = [(coef, operator value or None, v)] (coef a lane value)."""
        return self.lane(self.op.combine([(_scalar(c), value, self._view(v)) for c, value, v in terms], self.transforms,
                                         self.actions))

    def _view(self, v):
        """The grid view of lane array ``v``, one per array and step: the operator keeps its transforms by
        the view's id, so a register used by several sums is transformed once."""
        views = self.transforms.setdefault("lane_views", {})
        if id(v) not in views:
            views[id(v)] = v, self.grid(v)             # v kept: its id stays its own this step
        return views[id(v)][1]

    def values(self, h) -> dict:
        """{name: value of the scheme's operator at step size h} (h a lane value); starts a new step."""
        h = _scalar(h)
        self.transforms = {}
        key = float(f"{h:.12g}")      # a grid's equal steps differ in their last bits: one class
        if key in self.memo:
            self.memo[key] = self.memo.pop(key)          # most recent last
        else:
            cache = {}
            self.memo[key] = {name: self.op.values(poly, h, cache) for name, poly in self.polys.items()}
            while len(self.memo) > MEMO_SIZES:            # adaptive steps: every size new; keep the latest only
                self.memo.pop(next(iter(self.memo)))
        return self.memo[key]


def time_column_log_norms(A) -> tuple[float, float]:
    """Bounds on μ_2(A) and μ_2(−A) for A = [[X, w], [0, 0]] (J̃ with its time column w, dense or CSR) by Weyl's
    inequality on its Hermitian part diag(herm X, 0) + [[0, w/2], [w^H/2, 0]]: max(μ_2(±X), 0) + ‖w‖_2/2, where
    Gershgorin's (``krylov_action.log_norms``) counts w by its 1-norm — ‖w‖_1/2 from the last row — and sent forced
    problems' actions to Taylor (a 24 × 24 forced diffusion: 22 of 148 actions, 10679 products; by this bound 6235)."""
    from scipy import sparse
    from .krylov_action import log_norms, stable_norm
    plus, minus = log_norms(A[:-1, :-1])
    column = A[:-1, -1].toarray() if sparse.issparse(A) else A[:-1, -1]
    half = stable_norm(np.ravel(column)) / 2.0
    return max(plus, 0.0) + half, max(minus, 0.0) + half


class JacobianPattern:
    """The CSR pattern of J̃ = [[L + J, b], [0, 0]] (exponential Rosenbrock's augmented Jacobian, Hochbruck, Ostermann
    & Schweitzer 2009, SIAM J. Numer. Anal. 47:786, §2) for L's CSR and the entries (rows, cols) of J = ∂N/∂u
    (COO, duplicates summed), made once: each step only sums its data (measured, Exprb43: a routed Allen–Cahn of 256
    unknowns spent 0.6 ms a step forming J̃ dense and converting it to CSR, 0.44 → 0.34 s at rtol 1e-8; a 2-D one of
    30 × 30 with a DST-I Laplacian took dense products, 1.97 → 0.15 s at rtol 1e-6)."""

    def __init__(self, L, rows, cols):
        n = L.shape[0]
        l_rows = np.repeat(np.arange(n), np.diff(L.indptr))
        keys = (np.concatenate([l_rows, rows, np.arange(n)]) * (n + 1)
                + np.concatenate([L.indices, cols, np.full(n, n)]))
        unique, self.position = np.unique(keys, return_inverse=True)     # each entry's place in J̃'s data
        self.indices = unique % (n + 1)
        self.indptr = np.searchsorted(unique // (n + 1), np.arange(n + 2))
        self.rows, self.cols, self.n = np.array(rows), np.array(cols), n

    def holds(self, J) -> bool:
        """Whether J's entries are at this pattern's (rows, cols), in its order."""
        return np.array_equal(J.row, self.rows) and np.array_equal(J.col, self.cols)

    def sparse_enough(self) -> bool:
        """At most SPARSE_ACTION_DENSITY of J̃'s entries nonzero: else dense products are faster."""
        from .operators import SPARSE_ACTION_DENSITY
        return self.indices.size <= SPARSE_ACTION_DENSITY * (self.n + 1) ** 2

    def matrix(self, L, values, b):
        """J̃ with L's data, J's ``values`` (at rows, cols) and b: L_ij + J_ij in that order (the dense sum's)."""
        from scipy import sparse
        data = np.bincount(self.position, weights=np.concatenate([L.data, values, b]), minlength=self.indices.size)
        return sparse.csr_matrix((data, self.indices, self.indptr), shape=(self.n + 1, self.n + 1))


# ---- what the compiled field kernel (codegen.emit_field.emit_field_numba) calls ---------------------------


def mirrored_halves(M):
    """(2, n/2, n/2): the top half of M's even and odd columns, where M (n × n, n even) has mirrored rows
    M[n-1-j, k] = (-1)^k M[j, k] — the matrices of the type-I sine and cosine transforms (sin(π(n+1-j)k/(n+1))
    = (-1)^(k+1) sin(πjk/(n+1)), 1-based; cos likewise) — or None where it does not."""
    M = np.asarray(M, dtype=float)
    n = M.shape[0]
    if n % 2 or M.shape != (n, n):
        return None
    signs = (-1.0) ** np.arange(n)
    if not np.allclose(M[::-1], M * signs, rtol=0, atol=1e-13 * np.abs(M).max()):
        return None
    h = n // 2
    return np.ascontiguousarray(np.stack([M[:h, 0::2], M[:h, 1::2]]))


@numba.njit(**JIT_FLAGS)
def csr_product(data, indices, indptr, v):
    """A v for A in CSR form (``scipy.sparse.csr_matrix``'s data, indices, indptr): an operator inside N."""
    n = indptr.size - 1
    out = np.zeros(n)
    for i in range(n):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * v[indices[k]]
        out[i] = acc
    return out


@numba.njit(**JIT_FLAGS)
def mirrored_product(halves, v):
    """M v from :func:`mirrored_halves` (M's top half, even and odd columns): two (n/2)-square products in place
    of one n-square, a = E v_even, b = O v_odd, (M v)_j = a_j + b_j and (M v)_{n-1-j} = a_j - b_j."""
    h = halves.shape[1]
    a = halves[0] @ np.ascontiguousarray(v[0::2])
    b = halves[1] @ np.ascontiguousarray(v[1::2])
    out = np.empty(2 * h, dtype=a.dtype)
    for j in range(h):
        out[j] = a[j] + b[j]
        out[2 * h - 1 - j] = a[j] - b[j]
    return out


@numba.njit(**JIT_FLAGS)
def pair_of(z):
    """A complex field's flat values ``z`` as its real pair (Re z, Im z), concatenated."""
    return np.concatenate((np.ascontiguousarray(z.real), np.ascontiguousarray(z.imag)))
