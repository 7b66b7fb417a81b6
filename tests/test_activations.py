"""The MLP activations are one table (``codegen.neural.ACTIVATIONS``: σ as a sympy expression of x,
σ' its sympy.diff or a proven-equal form) printed by every backend: σ and σ' are the functions
they name, the printed forms do not overflow, and numpy, Numba and CUDA (compiled as host C++)
agree on a model that uses every activation, through its forward pass and its Jacobian (Exprb43)."""
import shutil

import mpmath
import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit.codegen.methods import get_method
from sdekit.codegen.neural import ACTIVATIONS, X, activation, activation_grad
from sdekit.kernels.cache import load_module
from sdekit.solve import scheme_and_source

#: nonzero points from deep in both tails to the kink at 0 (every activation is smooth away from 0)
POINTS = sorted({float(v) for v in np.r_[np.linspace(-60, 60, 241), np.geomspace(1e-12, 1, 25),
                                         -np.geomspace(1e-12, 1, 25), [700.0, -700.0]] if v != 0})

#: σ by its textbook definition, in mpmath (what torch.nn's modules compute)
REFERENCE = {
    "tanh": mpmath.tanh,
    "relu": lambda x: max(x, 0),
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log(1 + mpmath.exp(x)),
    "silu": lambda x: x / (1 + mpmath.exp(-x)),
    "identity": lambda x: x,
}


def _at(expr, v):
    return sp.sympify(expr).subs(X, sp.Float(v, 40)).evalf(30)


def test_the_table_is_the_activations_torch_names():
    assert set(ACTIVATIONS) == set(REFERENCE)
    with pytest.raises(sk.ModelError, match="unknown activation"):
        sk.MLP("f", [1, 1], activation="gelu")
    with mpmath.workdps(40):
        for kind, ref in REFERENCE.items():
            for v in POINTS + [0.0]:
                want = ref(mpmath.mpf(v))
                got = mpmath.mpf(str(_at(activation(kind).rewrite(sp.log), v)))
                assert abs(got - want) <= 1e-25 * max(1, abs(want)), (kind, v, got, want)


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_each_derivative_is_sympy_diff_of_its_activation(kind):
    """σ' equals sympy.diff(σ): identically where it is printed as diff's result, else at every point
    (relu' and softplus' are written out: diff gives Heaviside/sign forms); at the kink x = 0 relu'
    is 0 (torch's subgradient; sympy's Heaviside(0) is 1/2)."""
    d, ref = activation_grad(kind), sp.diff(ACTIVATIONS[kind], X)
    if kind not in ("relu", "softplus"):
        assert d == ref
    for v in POINTS:
        assert abs(_at(d, v) - _at(ref, v)) <= 1e-25 * max(1, abs(_at(ref, v))), (kind, v)
    if kind == "relu":
        assert _at(d, 0.0) == 0 and abs(_at(ref, 0.0) - sp.Rational(1, 2)) <= 1e-25
    else:
        assert abs(_at(d, 0.0) - _at(ref, 0.0)) <= 1e-25


def _model(sizes=(3, 5, 3)):
    """y' = L y + Σ_k net_k(y + shift): one MLP (3-5-3: a layer's code is the same at any width and depth, and
    the Numba compile of six networks grows with their size) per activation, large enough weights that the
    pre-activations reach both tails."""
    y = sk.states("y", 3)
    nets = {kind: sk.MLP(f"n_{kind}", list(sizes), activation=kind) for kind in ACTIVATIONS}
    N = sp.zeros(3, 1)
    for k, net in enumerate(nets.values()):
        N += net(y + sp.Matrix([k, -k, k / 2]) / 4) / 8
    model = sk.ODE(y, linear=sp.diag(-1, -2, -3), nonlinear=N)
    rng = np.random.default_rng(7)
    weights = {net.name: [(3 * rng.normal(size=(o, i)) / np.sqrt(i), 2 * rng.normal(size=o))
                          for i, o in zip(net.sizes[:-1], net.sizes[1:])] for net in nets.values()}
    prob = sk.ODEProblem(model, y0=[0.5, -0.2, 0.1], tspan=(0.0, 1.0), nets=weights)
    return sk.Ensemble(prob, y0=np.random.default_rng(0).normal(size=(12, 3)) * 3)


def test_the_numpy_module_prints_the_activations_and_they_do_not_overflow():
    ens = _model()
    _, src = scheme_and_source(ens.problem.model, get_method("Exprb43"))
    for kind in ACTIVATIONS:
        assert f"def act_{kind}(x):" in src and f"def act_{kind}_grad(x):" in src
    mod = load_module(src, "numpy")
    x = np.array([-1e300, -800.0, -40.0, -1e-300, 0.0, 1e-300, 40.0, 800.0, 1e300])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for kind in ACTIVATIONS:
            s = getattr(mod, f"act_{kind}")(x)
            g = np.broadcast_to(getattr(mod, f"act_{kind}_grad")(x), x.shape)
            assert np.all(np.isfinite(s)) and np.all(np.isfinite(g)), kind
    assert np.array_equal(mod.act_softplus(x), np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))
    assert mod.act_softplus(np.array([800.0]))[0] == 800.0


def _agree(a, b, tol):
    scale = np.max(np.abs(a.y))
    assert np.max(np.abs(a.y - b.y)) <= tol * scale, (np.max(np.abs(a.y - b.y)), scale)
    assert list(a.retcodes) == list(b.retcodes)


@pytest.mark.parametrize("backend, dtype, tol", [("numba", "float32", 2e-5), ("cuda-host", "float64", 1e-12)])
def test_backends_agree_on_every_activation(backend, dtype, tol):
    """RK4: the forward pass σ, printed for numpy, Numba and CUDA C (Numba in float64: the Exprb43 test below,
    whose f is the same printed forward pass)."""
    if backend == "cuda-host" and not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("cuda-host needs a C++ compiler")
    ens = _model()
    kw = dict(dt=0.05, saveat="steps")
    _agree(sk.solve(ens, "RK4", backend="numpy", **kw), sk.solve(ens, "RK4", backend=backend, dtype=dtype, **kw), tol)


def test_network_jacobians_agree_on_every_activation():
    """Exprb43: the forward pass σ and the tangent pass σ'(x) T of the network Jacobian, printed for numpy and
    Numba (float64)."""
    ens = _model()
    _agree(sk.solve(ens, "Exprb43", dt=0.05, backend="numpy"), sk.solve(ens, "Exprb43", dt=0.05, backend="numba"),
           1e-12)
