"""Structured linear operators of array states (fields on grids): applied as operators, never unrolled.

An operator knows how to apply itself (``apply(v)``) and how to evaluate and apply the scheme's
functions of it, Σ w Π φ_k(c hL) and resolvents (I − a hL)^{-1} (:func:`kernels.linear.evaluate_phi_poly`,
the one φ algorithm):

* :class:`Diagonal` — L = diag(λ) on the grid: every function elementwise.
* :class:`Fourier` — a periodic grid's translation-invariant operator (circulant in every axis), diagonal
  in Fourier space with eigenvalue ``symbol(k)`` at the wavenumbers k: applied by ``numpy.fft.rfftn``
  → multiply → ``irfftn`` (Kassam & Trefethen 2005, SIAM J. Sci. Comput. 26:1214, §2), its functions
  elementwise in Fourier space, so a step costs O(n log n).
* :class:`Trigonometric` — second differences with Dirichlet or Neumann boundaries, diagonal in the
  type-I sine / cosine bases (``scipy.fft.dstn`` / ``dctn``): the same, without periodicity.
* :class:`Species` — several fields on one grid, one operator each (block diagonal).
* :class:`Matrix` — any other operator (banded stencils with Dirichlet/Neumann boundaries, sparse,
  dense) as a ``scipy.sparse`` matrix or array: applied by its product; up to ``DENSE_FUNCTIONS_MAX``
  unknowns (a sparse one: ``SPARSE_EIGEN_MAX``) its functions are sums in the basis of its eigenvectors
  (:class:`Eigenvectors`, where they are well conditioned), else up to ``SPARSE_FUNCTIONS_MAX`` dense
  matrices computed once per step size (``phi_block``: scaling and squaring), above it their actions on the
  step's vectors (:func:`phi_action`: one exponential action of Al-Mohy & Higham's (2011) augmented matrix per
  φ-argument and statement, to the step's tolerance, by Krylov substeps, :mod:`kernels.krylov_action`, or
  Taylor's series, :mod:`kernels.expm_action`: ``KRYLOV_NORM_MIN``).

``combine(terms)`` sums Σ coef · f(hL) v over a statement's terms with one transform per vector and one
inverse transform per sum (Fourier).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .expm_action import ActionControl, expm_action, one_norm
from .krylov_action import krylov_phi_action, log_norm_bound, log_norms
from .linear import evaluate_phi_poly

#: the largest Matrix operator whose φ-functions are formed as dense matrices
DENSE_FUNCTIONS_MAX = 4096
#: ... and the largest without a well-conditioned eigendecomposition (non-normal, defective): above it φ-actions, as
#: dense φ by scaling and squaring cost O(n³) at every adaptive step size.  Measured with Krylov actions (2 shared
#: cores; 1-D upwind advection–diffusion, u' = A u − u³ to T = 0.5): adaptive ETDRK3 (rtol 1e-6) dense vs actions
#: 0.032 vs 0.039 s at n = 16, 0.074 vs 0.040 s at 24, 0.16 vs 0.043 s at 32, 1.36 vs 0.048 s at 64; fixed ETDRK4 (64
#: steps, φ once) 0.007 vs 0.062 s at 24, 0.026 vs 0.070 s at 64: the larger loss decides (was 64 with Taylor actions:
#: a 2-D upwind stencil of 225 unknowns, ETDRK4 to T = 0.5, 2.5 s dense, 0.2 s actions)
SPARSE_FUNCTIONS_MAX = 24
#: the largest sparse Matrix that takes its eigendecomposition (once, O(n³); then O(n²) a vector, compiled) rather than
#: Krylov φ-actions.  Measured (2 shared cores; 2-D Allen–Cahn, ε = 0.01, a symmetric Dirichlet stencil in scipy.sparse,
#: to T = 5; eigendecomposition + solve vs actions): adaptive ETDRK3 (rtol 1e-6) 0.12 vs 0.16 s at 441 unknowns, 0.18
#: vs 0.14 s at 484, 0.29 vs 0.15 s at 576, 1.17 vs 0.22 s at 1024; fixed ETDRK4 (64 steps) 0.047 vs 0.094 s at 441,
#: 0.09 vs 0.11 s at 576, 0.18 vs 0.12 s at 784, 0.40 vs 0.17 s at 1024 (was 1024 with Taylor actions: 400 unknowns,
#: adaptive ETDRK3, 2.3 s by actions, 0.06 s in the eigenvector basis)
SPARSE_EIGEN_MAX = 512
#: 1-D sine / cosine transforms up to this many points are applied as matrices (measured, n = 256: a
#: scipy.fft.dst call 33 µs, the matrix-vector product 7 µs)
SMALL_TRANSFORM = 512
#: a dense Matrix's φ-actions multiply by it as a sparse matrix where at most this fraction of its entries are nonzero
SPARSE_ACTION_DENSITY = 0.1
#: entries of a transform operator's matrix (:func:`dense_matrix`) at most this times its largest are the rounding of
#: its transforms, not a stencil's (measured, 0.01·laplacian in 1-D to 3-D, Dirichlet/Neumann/periodic, 16 to 1024
#: points: the entries off the stencil at most 3.7e-16 of the largest, the smallest on it 0.17 of it)
STENCIL_ROUNDING = 2.0 ** -45
#: a non-symmetric dense Matrix takes its φ from an eigendecomposition where κ_2(V) is at most this (its
#: functions then carry at most ~1e4 u = 2e-12 relative error); a worse-conditioned one φ-actions
EIGEN_COND_MAX = 1e4
#: a φ-action with ‖scale·A‖_1 above this takes the Krylov path (:mod:`kernels.krylov_action`), else the Taylor path
#: (:mod:`kernels.expm_action`).  Measured (2 shared cores; vectors {1, 3, 4}, tol 1e-5 and u; ‖scale·A‖_1 from 0.01 to
#: 400): Krylov as fast or faster at every norm — a sparse stencil of 257 unknowns 0.15 vs 0.30 ms at 0.01, 1.5 vs
#: 6.0 ms at 400 (150 vs 527 products), a 2-D one of 4096 0.8 vs 1.3 ms and 12 vs 57 ms; dense random and stencil
#: matrices of 100 to 1000 unknowns from 0.22 vs 0.20 ms (n = 100, ‖X‖_1 = 1) to 7.8 vs 163 ms (n = 1000, 100): Taylor's
#: set-up (shift, augmented matrix, power-norm estimates) costs more than Krylov's first products — so every action
#: but a zero one.
KRYLOV_NORM_MIN = 0.0
#: ... and where X cannot grow far inside the step: the bound on its logarithmic 2-norm
#: (:func:`~.krylov_action.log_norm_bound`) at most this, ‖e^{tX}‖_2 ≤ e^10 = 2e4.  Measured, X = a(−I + rN) (N the
#: shift, n = 20, 40; a = 10, 50; r = 1 … 3; tol 1e-8): Krylov within 3e-10 up to μ = 50 but 5e-3 at μ = 100 (n = 20:
#: the basis exhausts the space and H's rounding moves its eigenvalues), Taylor within 5e-9 everywhere; stencils and
#: Allen–Cahn's J̃ have μ ≤ h max N'.
KRYLOV_LOG_NORM_MAX = 10.0


#: what an operator keeps of its eigenvalues (the transform's matrices are kept by :meth:`Diagonalised.scaled`)
EIGENVALUE_CACHES = ("_dense_matrix", "_sparse_matrix", "_folded")


def dense_matrix(op) -> np.ndarray:
    """The matrix of ``op`` on the flattened state (its columns by ``apply``), made once per operator."""
    if "_dense_matrix" not in op.__dict__:
        size = int(np.prod(op.shape))
        op.__dict__["_dense_matrix"] = np.stack([np.asarray(op.apply(e.reshape(op.shape)), dtype=float).ravel()
                                                 for e in np.eye(size)], axis=1)
    return op.__dict__["_dense_matrix"]


def sparse_matrix(op):
    """The matrix of ``op`` in CSR where it is sparse, else None (a spectral or dense operator); made once per
    operator.  A :class:`Matrix`'s is its :meth:`~Matrix.action_matrix` where that is sparse; another operator's
    (a stencil applied by transforms) its :func:`dense_matrix` without the transforms' rounding (entries at most
    STENCIL_ROUNDING of the largest) where at most SPARSE_ACTION_DENSITY of its entries are left."""
    if "_sparse_matrix" not in op.__dict__:
        from scipy import sparse
        if isinstance(op, Matrix):
            A = op.action_matrix()
            op.__dict__["_sparse_matrix"] = sparse.csr_matrix(A) if sparse.issparse(A) else None
        else:
            A = dense_matrix(op)
            kept = np.abs(A) > STENCIL_ROUNDING * np.abs(A).max(initial=0.0)
            sparse_enough = np.count_nonzero(kept) <= SPARSE_ACTION_DENSITY * A.size
            op.__dict__["_sparse_matrix"] = sparse.csr_matrix(np.where(kept, A, 0.0)) if sparse_enough else None
    return op.__dict__["_sparse_matrix"]


class Eigenbasis(NamedTuple):
    """An operator as the compiled field kernel takes it (``codegen.emit_field.emit_field_numba``): diagonal
    in the basis ``kind`` ("diagonal": none; "fourier": rfftn; "dst"/"dct": the type-I transforms of
    :class:`Trigonometric`) of each of ``species`` fields on ``grid``, with ``eigenvalues`` in the transform's
    layout flattened, species first; ``matrices``: (forward, backward) where a small 1-D transform is a matrix."""

    kind: str
    grid: tuple
    species: int
    eigenvalues: np.ndarray
    matrices: tuple = ()


class Operator:
    """A linear operator on arrays of ``shape``."""

    shape: tuple = ()

    def eigenbasis(self) -> Eigenbasis | None:
        """This operator for the compiled field kernel, or None where it runs on the numpy driver only."""
        return None

    @staticmethod
    def flat(value) -> np.ndarray:
        """A :meth:`values` result in :class:`Eigenbasis` layout (flattened, species first)."""
        return np.concatenate([np.ravel(v) for v in value]) if isinstance(value, list) else np.ravel(value)

    def apply(self, v):
        raise NotImplementedError

    def values(self, poly, h: float, cache: dict):
        """The value of Σ w Π atoms(hL) (``sdekit.codegen.phi.phi_poly``) in this operator's representation."""
        raise NotImplementedError

    def combine(self, terms, transforms=None, actions: ActionControl | None = None):
        """Σ coef · value v over ``terms`` = [(coef, value or None (the identity), v)]; ``transforms``: a dict
        the caller keeps while the vectors live (a step), where an operator may keep their transforms; ``actions``:
        the tolerance and count of φ-actions (:class:`Matrix`; every other value is exact to rounding)."""
        total = None
        for coef, value, v in terms:
            x = v if value is None else self._apply_value(value, v)
            x = coef * x if coef != 1.0 else x
            total = x if total is None else total + x
        return total

    def _apply_value(self, value, v):
        raise NotImplementedError


class Diagonal(Operator):
    """L = diag(λ): ``eigenvalues`` has the state's shape (real)."""

    def __init__(self, eigenvalues):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.shape = self.eigenvalues.shape

    def apply(self, v):
        return self.eigenvalues * v

    def eigenbasis(self):
        return Eigenbasis("diagonal", self.shape, 1, self.eigenvalues.ravel())

    def values(self, poly, h, cache):
        flat = self.eigenvalues.reshape(-1, 1)
        return np.broadcast_to(evaluate_phi_poly(poly, "diagonal", flat, h, cache), flat.shape).reshape(self.shape)

    def _apply_value(self, value, v):
        return value * v


class Diagonalised(Operator):
    """An operator diagonal in a fast transform's basis: ``eigenvalues`` in the transformed layout,
    ``forward``/``backward`` the transform and its inverse.  Applied by transform → multiply → inverse,
    its functions elementwise on the eigenvalues, so a step costs O(n log n)."""

    eigenvalues: np.ndarray

    def forward(self, v):
        raise NotImplementedError

    def backward(self, vh):
        raise NotImplementedError

    def apply(self, v):
        return self.backward(self.eigenvalues * self.forward(v))

    def eigenbasis(self):
        lam = np.broadcast_to(self.eigenvalues, self.forward(np.zeros(self.shape)).shape)
        lam = lam if np.iscomplexobj(lam) and np.any(lam.imag != 0) else lam.real
        kind = self.basis[0]
        matrices = getattr(self, "_matrices", None) or ()
        return Eigenbasis(kind, self.shape, 1, np.ascontiguousarray(lam).ravel(), tuple(matrices))

    def values(self, poly, h, cache):
        lam = np.broadcast_to(self.eigenvalues, self.forward(np.zeros(self.shape)).shape)
        if not (np.iscomplexobj(lam) and np.any(lam.imag != 0)):
            lam = lam.real                      # complex symbols (i k, i k³) take kernels.linear.phi_complex
        flat = np.ascontiguousarray(lam).reshape(-1, 1)
        return np.broadcast_to(evaluate_phi_poly(poly, "diagonal", flat, h, cache), flat.shape).reshape(lam.shape)

    def combine(self, terms, transforms=None, actions: ActionControl | None = None):
        """One forward transform per distinct vector (kept in ``transforms`` for the step's later sums), one
        backward transform per sum."""
        plain, spectral = None, None
        hats = {} if transforms is None else transforms
        for coef, value, v in terms:
            if value is None:
                x = coef * v
                plain = x if plain is None else plain + x
                continue
            if id(v) not in hats:
                hats[id(v)] = v, self.forward(v)      # v kept: its id stays its own while the entry lives
            x = (coef * value) * hats[id(v)][1]
            spectral = x if spectral is None else spectral + x
        if spectral is None:
            return plain
        out = self.backward(spectral)
        return out if plain is None else out + plain

    @property
    def basis(self) -> tuple:
        """What identifies the transform: operators in one basis add by their eigenvalues."""
        raise NotImplementedError

    def scaled(self, eigenvalues):
        """The same transform with other eigenvalues (``c * op``, ``op + op``)."""
        new = object.__new__(type(self))
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in EIGENVALUE_CACHES}, eigenvalues=eigenvalues)
        return new


class Fourier(Diagonalised):
    """A periodic grid's operator with eigenvalue ``symbol(k_1, ..., k_m)`` at the wavenumbers
    k_a = 2π/ℓ_a · (0, 1, ..., n_a/2) (last axis, rfft) or the full FFT frequencies (other axes)."""

    def __init__(self, shape, lengths, eigenvalues):
        self.shape = tuple(int(n) for n in shape)
        self.lengths = tuple(float(x) for x in lengths)
        self.eigenvalues = np.asarray(eigenvalues)
        self.axes = tuple(range(-len(self.shape), 0))

    @property
    def basis(self):
        return "fourier", self.shape, self.lengths

    @staticmethod
    def wavenumbers(shape, lengths, half: bool = True):
        """The wavenumber grids (broadcastable) of a periodic grid ``shape`` on boxes ``lengths``: the rfftn
        layout (``half``: a real field's), else the fftn layout (a complex field's, :class:`Complexified`)."""
        ks = []
        for a, (n, ell) in enumerate(zip(shape, lengths)):
            last = a == len(shape) - 1 and half
            k = (np.fft.rfftfreq(n) if last else np.fft.fftfreq(n)) * n * 2 * np.pi / ell
            ks.append(k.reshape([-1 if b == a else 1 for b in range(len(shape))]))
        return ks

    def forward(self, v):
        if len(self.shape) == 1:          # rfft: less per-call overhead than rfftn on small grids
            return np.fft.rfft(v)
        return np.fft.rfftn(v, axes=self.axes)

    def backward(self, vh):
        if len(self.shape) == 1:
            return np.fft.irfft(vh, n=self.shape[0])
        return np.fft.irfftn(vh, s=self.shape, axes=self.axes)


class Trigonometric(Diagonalised):
    """Second differences with Dirichlet (``"dst"``: DST-I, zero values outside the grid) or Neumann
    (``"dct"``: DCT-I, ghost points mirrored, u_{-1} = u_1) boundaries in every axis: diagonal in the
    orthonormal type-I sine / cosine basis (Strang 1999, SIAM Rev. 41:135, the "DST-1" and "DCT-1" families),
    with eigenvalue Σ_a (2 cos θ_a − 2)/Δx_a², θ = π j/(n + 1) (DST, j = 1..n) or π j/(n − 1) (DCT, j = 0..n−1)."""

    def __init__(self, shape, kind, eigenvalues):
        self.shape, self.kind = tuple(int(n) for n in shape), kind
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)

    @property
    def basis(self):
        return self.kind, self.shape

    @staticmethod
    def angles(shape, kind):
        """θ per axis (broadcastable grids) of the type-I transform ``kind`` on ``shape``."""
        out = []
        for a, n in enumerate(shape):
            theta = np.pi * np.arange(1, n + 1) / (n + 1) if kind == "dst" else np.pi * np.arange(n) / max(n - 1, 1)
            out.append(theta.reshape([-1 if b == a else 1 for b in range(len(shape))]))
        return out

    def forward(self, v):
        """Coefficients in the eigenbasis: the orthonormal DST-I (symmetric, its own inverse); for the
        mirrored Neumann stencil, which is not symmetric, the eigenvectors are cos(π jk/(n−1)), the columns
        of C, and C^{-1} = W · idct with dct = C W (W = diag(1, 2, ..., 2, 1)): C Λ C^{-1} = dct Λ idct.
        A 1-D grid of at most SMALL_TRANSFORM points applies the transform as its matrix (one BLAS
        product: at these sizes a call of scipy.fft costs 5x the arithmetic)."""
        if self._matrices is not None:
            return self._matrices[0] @ v
        import scipy.fft
        return scipy.fft.dstn(v, type=1, norm="ortho") if self.kind == "dst" else scipy.fft.idctn(v, type=1)

    def backward(self, vh):
        if self._matrices is not None:
            return self._matrices[1] @ vh
        import scipy.fft
        return scipy.fft.idstn(vh, type=1, norm="ortho") if self.kind == "dst" else scipy.fft.dctn(vh, type=1)

    @property
    def _matrices(self):
        """(forward, backward) of a small 1-D grid as matrices: the scipy transforms of the identity's columns,
        made once per operator; None for larger or multi-dimensional grids."""
        if len(self.shape) != 1 or self.shape[0] > SMALL_TRANSFORM:
            return None
        if "_dense" not in self.__dict__:
            import scipy.fft
            eye = np.eye(self.shape[0])
            self._dense = ((scipy.fft.dst(eye, type=1, norm="ortho", axis=0), scipy.fft.idst(eye, type=1, norm="ortho", axis=0))
                           if self.kind == "dst" else (scipy.fft.idct(eye, type=1, axis=0), scipy.fft.dct(eye, type=1, axis=0)))
        return self._dense


class Complexified(Diagonalised):
    """An operator on a complex field z stored as its real pair, arrays (2, *grid) = (Re z, Im z): diagonal, with
    any complex ``eigenvalues`` (the grid's shape), in the complex extension of a real basis — ``base`` None (none:
    a complex diagonal, the diagonal state spaces of S4D, Gu et al. 2022, NeurIPS), "fourier" (the full FFT of z:
    Schrödinger and Ginzburg–Landau operators, any symbol, no Hermitian symmetry asked) or a :class:`Trigonometric`
    (its real transforms applied to Re z and Im z).  L z = T⁻¹(λ · T z), its functions elementwise in that basis
    (complex φ: ``kernels.linear.phi_complex``)."""

    def __init__(self, grid, eigenvalues, base=None):
        self.grid = tuple(int(n) for n in grid)
        self.shape = (2,) + self.grid
        self.eigenvalues = np.asarray(eigenvalues, dtype=complex)
        self.base = base

    @property
    def kind(self) -> str:
        """"diagonal", "fourier", "dst" or "dct": the real basis extended."""
        return "diagonal" if self.base is None else "fourier" if self.base == "fourier" else self.base.kind

    @property
    def basis(self):
        return "complex", self.kind, self.grid

    def forward(self, v):
        z = v[0] + 1j * v[1]
        if self.base is None:
            return z
        if self.base == "fourier":
            return np.fft.fftn(z)
        return self.base.forward(z.real) + 1j * self.base.forward(z.imag)

    def backward(self, zh):
        if self.base is None:
            z = zh
        elif self.base == "fourier":
            z = np.fft.ifftn(zh)
        else:
            z = self.base.backward(zh.real) + 1j * self.base.backward(zh.imag)
        return np.stack([z.real, z.imag])

    def eigenbasis(self):
        matrices = () if self.base is None or self.base == "fourier" else tuple(self.base._matrices or ())
        return Eigenbasis("c" + self.kind, self.grid, 1, np.ascontiguousarray(self.eigenvalues).ravel(), matrices)


class Matrix(Operator):
    """An operator given as a (sparse or dense) matrix on the flattened state."""

    def __init__(self, shape, matrix):
        self.shape = tuple(int(n) for n in shape)
        self.matrix = matrix
        self.size = int(np.prod(self.shape))

    def apply(self, v):
        return np.asarray(self.matrix @ v.reshape(-1)).reshape(self.shape)

    def dense(self):
        m = self.matrix
        return np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=float)

    def values(self, poly, h, cache):
        """The φ-polynomial as :meth:`phi_evaluation` decides: its values f(hλ) on the eigenvalues of the
        decomposition computed once (:class:`Eigenvectors`: O(n) per step size, O(n²) per vector); a dense matrix
        by ``phi_block``'s scaling and squaring; or the polynomial itself (:class:`PhiAction`), applied to vectors
        by :meth:`combine` (measured, an upwind advection–diffusion matrix of 200 unknowns, adaptive ETDRK3 to
        T = 1: 512 s with dense φ at every step size, 0.5 s by actions)."""
        how = self.phi_evaluation()
        if how.endswith("actions"):
            return PhiAction(poly, float(h))
        if how == "eigen":
            return self.eigenvectors().values(poly, h, cache)
        if "dense" not in cache:
            cache["dense"] = self.dense()[None]
        return evaluate_phi_poly(poly, "dense", cache["dense"], h, cache)[0]

    def phi_evaluation(self) -> str:
        """How :meth:`values` evaluates φ: "actions" above DENSE_FUNCTIONS_MAX unknowns (a sparse matrix:
        SPARSE_EIGEN_MAX); "eigen" where :meth:`eigen` has a decomposition; "non-normal actions" for another
        matrix above SPARSE_FUNCTIONS_MAX (numba's lanes-last ``phi_block`` at every adaptive step size would cost
        far more, ~1 s at n = 200); else "dense" (``phi_block``'s scaling and squaring)."""
        from scipy import sparse
        if self.size > (SPARSE_EIGEN_MAX if sparse.issparse(self.matrix) else DENSE_FUNCTIONS_MAX):
            return "actions"
        if self.eigen() is not None:
            return "eigen"
        return "non-normal actions" if self.size > SPARSE_FUNCTIONS_MAX else "dense"

    def eigen(self):
        """(λ, V, V⁻¹) with L = V diag(λ) V⁻¹, computed once: a symmetric matrix's orthonormal eigenvectors
        (``eigh``, V⁻¹ = Vᵀ); any other matrix's where they are well conditioned, κ_2(V) <= EIGEN_COND_MAX, so
        V f(hΛ) V⁻¹ is within κ(V)·u of f(hL) (Higham 2008, §4.5; ``eigen_cond`` keeps κ); else None (a
        non-normal or defective L)."""
        if not hasattr(self, "_eigen"):
            A = self.dense()
            if not np.all(np.isfinite(A)):
                self._eigen = None
            elif np.array_equal(A, A.T):
                lam, V = np.linalg.eigh(A)
                self._eigen = lam, V, V.T
            else:
                lam, V = np.linalg.eig(A)
                self.eigen_cond = float(np.linalg.cond(V))
                self._eigen = (lam, V, np.linalg.inv(V)) if self.eigen_cond <= EIGEN_COND_MAX else None
        return self._eigen

    def eigenvectors(self) -> "Eigenvectors":
        """This operator in the basis of its eigenvectors (:meth:`eigen`; made once)."""
        if "_eigenvectors" not in self.__dict__:
            lam, V, V_inv = self.eigen()
            self.__dict__["_eigenvectors"] = Eigenvectors(self.shape, lam, V, V_inv)
        return self.__dict__["_eigenvectors"]

    def eigenbasis(self):
        """Where φ comes from the eigendecomposition: the compiled field kernel sums in its basis."""
        return self.eigenvectors().eigenbasis() if self.phi_evaluation() == "eigen" else None

    def describe_phi(self) -> str:
        """:meth:`phi_evaluation` in words (``sol.stats["driver"]`` of routed solves)."""
        how = self.phi_evaluation()
        if how == "eigen":
            return "φ from eigh" if not hasattr(self, "eigen_cond") else f"φ from eig, κ(V) = {self.eigen_cond:.2g}"
        return {"actions": "φ-actions", "non-normal actions": "φ-actions (non-normal)",
                "dense": "φ by scaling and squaring"}[how]

    def _apply_value(self, value, v):
        return (value @ v.reshape(-1)).reshape(self.shape)

    def combine(self, terms, transforms=None, actions: ActionControl | None = None):
        """Σ coef · value v: values on the eigenvalues (1-D, :meth:`values`' "eigen") in the eigenvector basis
        (:class:`Eigenvectors`); φ-polynomials of a large operator (:class:`PhiAction`) as actions (to
        ``actions.tol``): the single-φ terms grouped by their argument c h, each group one :func:`phi_action`;
        products and resolvents (rare: W-methods, φ-products) applied factor by factor (sparse LU for the
        resolvents); dense matrices by their products."""
        values = [value for _, value, _ in terms if value is not None]
        if any(np.ndim(value) == 1 for value in values if not isinstance(value, PhiAction)):
            return self.eigenvectors().combine(terms, transforms, actions)
        if not any(isinstance(value, PhiAction) for value in values):
            return super().combine(terms, transforms)
        groups, total = {}, np.zeros(self.size)
        for coef, value, v in terms:
            flat = np.asarray(v, dtype=float).reshape(-1)
            if value is None:
                total += coef * flat
                continue
            if not isinstance(value, PhiAction):
                total += coef * (value @ flat)
                continue
            for weight, atoms in value.poly:
                w = coef * float(weight)
                if len(atoms) == 1 and atoms[0][0] == "phi":
                    vecs = groups.setdefault(float(atoms[0][2]) * value.h, {})
                    k = atoms[0][1]
                    vecs[k] = vecs[k] + w * flat if k in vecs else w * flat
                else:
                    total += w * self._product_action(atoms, value.h, flat, actions)
        for scale, vecs in groups.items():
            total += phi_action(self.action_matrix(), scale, vecs, actions, self.action_bounds())
        return total.reshape(self.shape)

    def _product_action(self, atoms, h, v, actions):
        """Π atoms(hA) v, the last factor first."""
        from scipy.sparse import csc_matrix, identity
        from scipy.sparse.linalg import splu
        for atom in reversed(atoms):
            if atom[0] == "res":
                key = ("lu", float(atom[1]) * h)
                if key not in self.__dict__.setdefault("_lu", {}):
                    self._lu[key] = splu(csc_matrix(identity(self.size) - key[1] * csc_matrix(self.matrix)))
                v = self._lu[key].solve(v)
            else:
                v = phi_action(self.action_matrix(), float(atom[2]) * h, {atom[1]: v}, actions, self.action_bounds())
        return v

    def action_matrix(self):
        """The matrix φ-actions multiply by: a dense array with at most SPARSE_ACTION_DENSITY of its entries
        nonzero (a stencil written out) as CSR, made once (measured, a dense upwind stencil of 400 unknowns,
        ETDRK4: 11 s by dense products, 3.8 s as the same matrix in scipy.sparse)."""
        if "_action_matrix" not in self.__dict__:
            from scipy import sparse
            A = self.matrix
            sparse_enough = isinstance(A, np.ndarray) and np.count_nonzero(A) <= SPARSE_ACTION_DENSITY * A.size
            self.__dict__["_action_matrix"] = sparse.csr_matrix(A) if sparse_enough else A
        return self.__dict__["_action_matrix"]

    def action_bounds(self) -> tuple:
        """:func:`action_bounds` of :meth:`action_matrix`, made once: :func:`phi_action` reads them at every action
        (measured: a dense J̃ of 901 unknowns, ~1 ms a norm, four actions a step, Exprb43 1.81 → 1.75 s; the
        logarithmic norms 0.3 ms an action on Allen–Cahn's J̃ of 257, 0.44 → 0.65 s)."""
        if "_action_bounds" not in self.__dict__:
            self.__dict__["_action_bounds"] = action_bounds(self.action_matrix())
        return self.__dict__["_action_bounds"]

    def tighten_log_norms(self, plus: float, minus: float):
        """Keep the least of :meth:`action_bounds`' μ_2 bounds and (``plus``, ``minus``): other valid bounds that the
        matrix's structure gives (``FieldLanes._time_scaled``: J̃'s time column by Weyl's inequality)."""
        norm, p, q = self.action_bounds()
        self.__dict__["_action_bounds"] = (norm, min(p, plus), min(q, minus))


class Eigenvectors(Diagonalised):
    """L = V diag(λ) V⁻¹ (a :class:`Matrix` with a well-conditioned eigendecomposition), diagonal in the basis of its
    eigenvectors: a sum Σ coef · f(hL) v_i is V (Σ coef · f(hλ) ⊙ V⁻¹ v_i), each vector transformed once a step, so a
    new step size costs O(n) and a vector O(n²), where forming f(hL) = V f(hΛ) V⁻¹ costs O(n³) at every adaptive
    step size (measured, a dense symmetric stencil of 400 unknowns, adaptive ETDRK3: 17 ms a step formed).  A real
    L's complex pairs (λ, conj λ) have conjugate eigenvectors and values, so the sum's imaginary part is rounding."""

    def __init__(self, shape, eigenvalues, V, V_inv):
        self.shape = tuple(shape)
        self.eigenvalues, self.V, self.V_inv = eigenvalues, V, V_inv

    @property
    def basis(self):
        return "eigenvectors", id(self.V)

    def forward(self, v):
        return self.V_inv @ np.ravel(v)

    def backward(self, vh):
        x = self.V @ vh
        return (x.real if np.iscomplexobj(x) else x).reshape(self.shape)

    def eigenbasis(self):
        kind = "eigen-complex" if np.iscomplexobj(self.V) else "eigen"
        return Eigenbasis(kind, self.shape, 1, np.ascontiguousarray(self.eigenvalues),
                          (np.ascontiguousarray(self.V_inv), np.ascontiguousarray(self.V)))


class PhiAction:
    """A φ-polynomial Σ w Π atoms(hL) of an operator too large for dense functions: kept as (poly, h), applied
    to vectors (:meth:`Matrix.combine`)."""

    def __init__(self, poly, h: float):
        self.poly, self.h = poly, h


def action_bounds(A) -> tuple:
    """(‖A‖_1, bounds on μ_2(A) and μ_2(−A)) of a dense or sparse A: what :func:`phi_action` routes by."""
    return (one_norm(A),) + log_norms(A)


def phi_action(A, scale: float, vectors: dict, actions: ActionControl | None = None, bounds: tuple | None = None
               ) -> np.ndarray:
    """Σ_k φ_k(scale·A) w_k for ``vectors`` = {k: w_k} (φ_0 = exp; real or complex) and A a dense array or scipy
    sparse matrix, to ``actions.tol`` (a step's tolerance: ``FieldLanes``), counted in ``actions``: by
    :func:`~.krylov_action.krylov_phi_action` where ‖scale·A‖_1 > KRYLOV_NORM_MIN and the bound on the logarithmic
    norm of scale·A is at most KRYLOV_LOG_NORM_MAX, else :func:`taylor_phi_action`.  ``bounds``: A's
    :func:`action_bounds` where the caller keeps them (:meth:`Matrix.action_bounds`)."""
    if not vectors:
        raise ValueError("phi_action needs at least one vector: {k: w_k}")
    A = A if isinstance(A, np.ndarray) else A.tocsr()      # a dense A (a field's Jacobian) stays dense: BLAS products
    norm, *growth = action_bounds(A) if bounds is None else bounds
    if abs(scale) * norm > KRYLOV_NORM_MIN and log_norm_bound(A, scale, tuple(growth)) <= KRYLOV_LOG_NORM_MAX:
        return krylov_phi_action(A, scale, vectors, actions)
    return taylor_phi_action(A, scale, vectors, actions)


def taylor_phi_action(A, scale: float, vectors: dict, actions: ActionControl | None = None) -> np.ndarray:
    """:func:`phi_action` by one exponential action of the augmented matrix Ã = [[X, ηW], [0, J]], X = scale·A
    (CSR or dense), W = [w_p, ..., w_1], J the p×p shift (ones above the diagonal):
    exp(Ã)[ηw_0; e_p] = [η(e^X w_0 + Σ_{k=1}^p φ_k(X) w_k); ...] (Al-Mohy & Higham 2011, SIAM J. Sci. Comput.
    33:488, Thm. 2.1).  η, a power of two, scales W down to ‖ηW‖_1 <= max(‖X‖_1, 1) (their §2: an unscaled W of
    a large state made ‖Ã‖_1, and with it the number of products, grow with the state's size).  The action is
    :func:`~.expm_action.expm_action` to the backward error ``actions.tol``."""
    n, p = A.shape[0], max(vectors)
    zero = np.zeros(n)
    dense = isinstance(A, np.ndarray)
    X = scale * (A if dense else A.tocsr())
    if p == 0:
        return expm_action(X, vectors[0], actions)
    W = np.column_stack([vectors.get(k, zero) for k in range(p, 0, -1)])
    w_norm, x_norm = np.abs(W).sum(axis=0).max(), one_norm(X)
    bound = max(x_norm, 1.0)                   # ‖J‖_1 = 1: W need not be smaller than that
    scale_down = np.isfinite(w_norm) and w_norm > bound     # not finite: expm_action's NaN (a diverging step)
    eta = 2.0 ** -np.ceil(np.log2(w_norm / bound)) if scale_down else 1.0
    aug = (np.block([[X, eta * W], [np.zeros((p, n)), np.eye(p, k=1)]]) if dense else _augmented_csr(X, eta * W))
    start = np.concatenate([eta * vectors.get(0, zero), np.eye(p)[-1]])
    return expm_action(aug, start, actions)[:n] / eta


def _augmented_csr(X, W):
    """[[X, W], [0, J]] in CSR (X CSR n × n, W dense n × p, J the p × p shift with ones above the diagonal) from
    the arrays directly: each row of X followed by its row of W (``scipy.sparse.bmat`` took most of a routed
    Exprb43 step building it through COO)."""
    from scipy import sparse
    n, p = W.shape
    counts = np.diff(X.indptr)
    indptr = np.concatenate([[0], np.cumsum(counts + p), [0] * p])
    row_of = np.repeat(np.arange(n), counts)
    x_at = indptr[row_of] + (np.arange(X.nnz) - X.indptr[row_of])
    w_at = (indptr[1:n + 1] - p)[:, None] + np.arange(p)
    size = indptr[n] + p - 1
    data, indices = np.empty(size, dtype=np.result_type(X.dtype, W.dtype)), np.empty(size, dtype=np.int64)
    data[x_at], indices[x_at] = X.data, X.indices
    data[w_at], indices[w_at] = W, n + np.arange(p)
    data[indptr[n]:], indices[indptr[n]:] = 1.0, n + np.arange(1, p)      # J: row n + i has its one at n + i + 1
    indptr[n + 1:] = indptr[n] + np.minimum(np.arange(1, p + 1), p - 1)
    return sparse.csr_matrix((data, indices, indptr), shape=(n + p, n + p))


class Species(Operator):
    """Several fields on one grid, each with its own operator (block diagonal): states (s, *grid)."""

    def __init__(self, ops):
        self.ops = list(ops)
        self.shape = (len(self.ops),) + tuple(self.ops[0].shape)

    def apply(self, v):
        return np.stack([op.apply(x) for op, x in zip(self.ops, v, strict=True)])

    def eigenbasis(self):
        """The species' operators in one basis (the same kind on the grid), their eigenvalues stacked."""
        parts = [op.eigenbasis() for op in self.ops]
        if any(p is None for p in parts) or len({(p.kind, p.grid) for p in parts}) != 1:
            return None
        if parts[0].kind.startswith("eigen") and any(p.matrices[1] is not parts[0].matrices[1] for p in parts):
            return None                   # matrices with other eigenvectors: no one basis
        return Eigenbasis(parts[0].kind, parts[0].grid, sum(p.species for p in parts),    # nested: complex fields
                          np.concatenate([p.eigenvalues for p in parts]), parts[0].matrices)

    def values(self, poly, h, cache):
        caches = cache.setdefault("species", [{} for _ in self.ops])
        return [op.values(poly, h, c) for op, c in zip(self.ops, caches, strict=True)]

    def combine(self, terms, transforms=None, actions: ActionControl | None = None):
        transforms = {} if transforms is None else transforms
        parts = transforms.setdefault("species", [{} for _ in self.ops])
        views = transforms.setdefault("views", {})    # one view per species of each vector: stable ids
        for _, _, v in terms:
            views.setdefault(id(v), (v, list(v)))
        return np.stack([op.combine([(coef, None if value is None else value[s], views[id(v)][1][s])
                                     for coef, value, v in terms], parts[s], actions)
                         for s, op in enumerate(self.ops)])
